//! The mapping model, sans I/O: which local address and names each
//! customer's service target gets.
//!
//! A target host of a customer (`10.0.0.5@acme`) gets one local IPv4 address
//! from a configured range; every service on that host listens there on the
//! service's port. The address is a keyed hash of (customer, host) probed to
//! a free slot, so the same set of targets maps to the same addresses after
//! a restart (the key is kept by the caller), hosts already mapped keep
//! their address while others come and go, and the same remote address at
//! two customers gets two local addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The default range of the loopback (legacy) mode: on Linux every 127/8
/// address is local without setup.
pub const LEGACY_RANGE: &str = "127.77.0.0/16";
/// The default range of the driver mode (routed to its TUN device).
pub const DRIVER_RANGE: &str = "100.100.0.0/16";
/// The suffix of every generated hostname: `SERVICE.CUSTOMER.cpam`.
pub const NAME_SUFFIX: &str = "cpam";

/// An IPv4 range `A.B.C.D/PREFIX` (prefix 8 to 30) addresses are taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    network: Ipv4Addr,
    prefix: u8,
}

impl Range {
    /// How many addresses the range spans.
    pub fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// The range's first address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        u32::from(ip) & mask == u32::from(self.network)
    }

    fn nth(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + (i % self.size()))
    }

    /// Whether the address may be handed out: never a `.0` or `.255`
    /// (broadcast-looking), nor 127.0.0.1.
    fn usable(ip: Ipv4Addr) -> bool {
        let last = ip.octets()[3];
        last != 0 && last != 255 && ip != Ipv4Addr::LOCALHOST
    }
}

impl FromStr for Range {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("address range `{s}` {why}"));
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("must be A.B.C.D/PREFIX"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| bad("must start with an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("must end with a prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("must have a prefix length between 8 and 30"));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        if u32::from(ip) & !mask != 0 {
            return Err(bad("must start at its network address"));
        }
        Ok(Range {
            network: ip,
            prefix,
        })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// One service the user may use, as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    /// The customer's name.
    pub customer: String,
    pub service: String,
    pub kind: String,
    /// The target's host (an address or a name) inside the customer's network.
    pub host: String,
    pub port: u16,
}

impl ServiceTarget {
    /// A target from the server's `HOST:PORT` (or `[V6]:PORT`) text.
    pub fn parse(customer: &str, service: &str, kind: &str, target: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("service `{service}` has a bad target `{target}`"));
        let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(ServiceTarget {
            customer: customer.to_string(),
            service: service.to_string(),
            kind: kind.to_string(),
            host: host.to_string(),
            port: port.parse().map_err(|_| bad())?,
        })
    }
}

/// Where one service is reached on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub customer: String,
    pub service: String,
    pub kind: String,
    /// The remote `HOST:PORT` inside the customer's network.
    pub target: String,
    /// The local address and port a client connects to.
    pub local: SocketAddrV4,
    /// Names that resolve to `local`'s address.
    pub hostnames: Vec<String>,
}

/// A service (or a name) that could not be mapped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub customer: String,
    pub service: String,
    pub reason: String,
}

/// The outcome of [`Allocator::map`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Sorted by customer, then service.
    pub mappings: Vec<Mapping>,
    pub skipped: Vec<Skipped>,
}

impl Plan {
    /// Each local address with its names, for a resolver (sorted, no empty entries).
    pub fn names(&self) -> Vec<(Ipv4Addr, Vec<String>)> {
        let mut by_ip: BTreeMap<Ipv4Addr, BTreeSet<String>> = BTreeMap::new();
        for m in &self.mappings {
            by_ip
                .entry(*m.local.ip())
                .or_default()
                .extend(m.hostnames.iter().cloned());
        }
        by_ip
            .into_iter()
            .filter(|(_, n)| !n.is_empty())
            .map(|(ip, n)| (ip, n.into_iter().collect()))
            .collect()
    }
}

/// Hands out local addresses: stable while running (a mapped host keeps its
/// address) and across restarts (same key and targets, same addresses).
#[derive(Debug, Clone)]
pub struct Allocator {
    range: Range,
    key: [u8; 32],
    /// (customer, host) -> address.
    table: BTreeMap<(String, String), Ipv4Addr>,
    /// Addresses never handed out (the driver device's own).
    reserved: BTreeSet<Ipv4Addr>,
}

impl Allocator {
    /// An allocator over `range`, its hash keyed with `key` (a secret kept
    /// per installation, so addresses are not guessable across machines).
    pub fn new(range: Range, key: [u8; 32]) -> Self {
        Allocator {
            range,
            key,
            table: BTreeMap::new(),
            reserved: BTreeSet::new(),
        }
    }

    /// Never hands out `ip` (an address the machine itself uses).
    pub fn reserve(mut self, ip: Ipv4Addr) -> Self {
        self.reserved.insert(ip);
        self
    }

    /// The range addresses come from.
    pub fn range(&self) -> Range {
        self.range
    }

    fn candidate(&self, customer: &str, host: &str, attempt: u32) -> Ipv4Addr {
        let mut h = Sha256::new();
        h.update(self.key);
        for part in [customer, host] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.update(attempt.to_be_bytes());
        let d = h.finalize();
        self.range.nth(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
    }

    fn place(&self, customer: &str, host: &str, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let free = |ip: &Ipv4Addr| {
            Range::usable(*ip) && !taken.contains(ip) && !self.reserved.contains(ip)
        };
        // Keyed probing first; a crowded range falls back to a scan, so a
        // free address is always found while there is one.
        (0..64)
            .map(|i| self.candidate(customer, host, i))
            .find(free)
            .or_else(|| {
                let start = u32::from(self.candidate(customer, host, 0));
                let base = u32::from(self.range.network);
                (0..self.range.size())
                    .map(|i| self.range.nth(start - base + i))
                    .find(free)
            })
    }

    /// Maps `targets`. Hosts no longer among them free their address; hosts
    /// already mapped keep theirs; new ones are placed in sorted order.
    pub fn map(&mut self, targets: &[ServiceTarget]) -> Plan {
        let mut targets: Vec<&ServiceTarget> = targets.iter().collect();
        targets.sort_by(|a, b| {
            (&a.customer, &a.service, &a.host, a.port, &a.kind).cmp(&(
                &b.customer,
                &b.service,
                &b.host,
                b.port,
                &b.kind,
            ))
        });
        let wanted: BTreeSet<(String, String)> = targets
            .iter()
            .map(|t| (t.customer.clone(), host_key(&t.host)))
            .collect();
        self.table.retain(|k, _| wanted.contains(k));
        let mut taken: BTreeSet<Ipv4Addr> = self.table.values().copied().collect();
        let mut plan = Plan::default();
        for key in &wanted {
            if self.table.contains_key(key) {
                continue;
            }
            match self.place(&key.0, &key.1, &taken) {
                Some(ip) => {
                    taken.insert(ip);
                    self.table.insert(key.clone(), ip);
                }
                None => plan.skipped.extend(
                    targets
                        .iter()
                        .filter(|t| t.customer == key.0 && host_key(&t.host) == key.1)
                        .map(|t| Skipped {
                            customer: t.customer.clone(),
                            service: t.service.clone(),
                            reason: format!("the address range {} is full", self.range),
                        }),
                ),
            }
        }
        let mut seen_service: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut ports: BTreeMap<SocketAddrV4, &str> = BTreeMap::new();
        for t in &targets {
            let Some(ip) = self.table.get(&(t.customer.clone(), host_key(&t.host))) else {
                continue;
            };
            if !seen_service.insert((&t.customer, &t.service)) {
                continue;
            }
            let local = SocketAddrV4::new(*ip, t.port);
            if let Some(first) = ports.get(&local) {
                plan.skipped.push(Skipped {
                    customer: t.customer.clone(),
                    service: t.service.clone(),
                    reason: format!(
                        "service `{first}` of the same customer already uses {}:{}",
                        t.host, t.port
                    ),
                });
                continue;
            }
            ports.insert(local, &t.service);
            let mut hostnames = vec![format!(
                "{}.{}.{NAME_SUFFIX}",
                label(&t.service),
                label(&t.customer)
            )];
            if t.host.parse::<IpAddr>().is_err() {
                hostnames.push(t.host.to_ascii_lowercase());
            }
            plan.mappings.push(Mapping {
                customer: t.customer.clone(),
                service: t.service.clone(),
                kind: t.kind.clone(),
                target: if t.host.contains(':') {
                    format!("[{}]:{}", t.host, t.port)
                } else {
                    format!("{}:{}", t.host, t.port)
                },
                local,
                hostnames,
            });
        }
        drop_ambiguous_names(&mut plan);
        plan
    }
}

/// Hosts compare without case (names) so `DB1` and `db1` share an address.
fn host_key(host: &str) -> String {
    host.to_ascii_lowercase()
}

/// A DNS label from a cpam name: lowercase, `_` and `.` as `-`.
pub fn label(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let s = s.trim_matches('-');
    if s.is_empty() {
        "x".to_string()
    } else {
        s.to_string()
    }
}

/// A name that would point at two local addresses (the same target name at
/// two customers) is given to neither: a name must never reach the wrong
/// customer.
fn drop_ambiguous_names(plan: &mut Plan) {
    let mut owners: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for m in &plan.mappings {
        for n in &m.hostnames {
            owners.entry(n.clone()).or_default().insert(*m.local.ip());
        }
    }
    let mut reported = BTreeSet::new();
    for m in &mut plan.mappings {
        let before = m.hostnames.len();
        m.hostnames
            .retain(|n| owners.get(n).is_none_or(|o| o.len() == 1));
        if m.hostnames.len() != before && reported.insert((m.customer.clone(), m.service.clone())) {
            plan.skipped.push(Skipped {
                customer: m.customer.clone(),
                service: m.service.clone(),
                reason: "its target's name is another customer's too; use its .cpam name"
                    .to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(customer: &str, service: &str, target: &str) -> ServiceTarget {
        ServiceTarget::parse(customer, service, "tcp", target).unwrap()
    }

    fn alloc() -> Allocator {
        Allocator::new(LEGACY_RANGE.parse().unwrap(), [7; 32])
    }

    #[test]
    fn ranges_parse_and_bad_ones_are_named() {
        let r: Range = "127.77.0.0/16".parse().unwrap();
        assert_eq!(r.size(), 65536);
        assert!(r.contains(Ipv4Addr::new(127, 77, 3, 4)));
        assert!(!r.contains(Ipv4Addr::new(127, 78, 0, 1)));
        for bad in [
            "127.77.0.1/16",
            "127.77.0.0",
            "x/16",
            "10.0.0.0/4",
            "10.0.0.0/31",
        ] {
            let e = bad.parse::<Range>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn one_address_per_host_and_a_listener_per_port() {
        let plan = alloc().map(&[
            t("acme", "ssh", "10.0.0.5:22"),
            t("acme", "web", "10.0.0.5:80"),
            t("acme", "db", "db1.acme.internal:5432"),
        ]);
        assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
        let by = |s: &str| plan.mappings.iter().find(|m| m.service == s).unwrap();
        assert_eq!(by("ssh").local.ip(), by("web").local.ip());
        assert_eq!((by("ssh").local.port(), by("web").local.port()), (22, 80));
        assert_ne!(by("db").local.ip(), by("ssh").local.ip());
        assert_eq!(by("ssh").hostnames, vec!["ssh.acme.cpam"]);
        assert_eq!(
            by("db").hostnames,
            vec!["db.acme.cpam", "db1.acme.internal"]
        );
        let names = plan.names();
        let ssh_ip = *by("ssh").local.ip();
        let entry = names.iter().find(|(ip, _)| *ip == ssh_ip).unwrap();
        assert_eq!(entry.1, vec!["ssh.acme.cpam", "web.acme.cpam"]);
    }

    #[test]
    fn the_same_address_at_two_customers_maps_twice() {
        let plan = alloc().map(&[
            t("acme", "ssh", "10.0.0.5:22"),
            t("globex", "ssh", "10.0.0.5:22"),
        ]);
        assert_eq!(plan.mappings.len(), 2);
        assert_ne!(plan.mappings[0].local, plan.mappings[1].local);
        assert_eq!(plan.mappings[1].hostnames, vec!["ssh.globex.cpam"]);
    }

    #[test]
    fn a_target_name_at_two_customers_is_given_to_neither() {
        let plan = alloc().map(&[
            t("acme", "db", "db.internal:5432"),
            t("globex", "db", "db.internal:5432"),
        ]);
        assert_eq!(plan.mappings.len(), 2);
        assert!(plan.mappings.iter().all(|m| m.hostnames.len() == 1));
        assert_eq!(plan.skipped.len(), 2);
    }

    #[test]
    fn two_services_on_one_port_keep_the_first() {
        let plan = alloc().map(&[t("acme", "a", "10.0.0.5:22"), t("acme", "b", "10.0.0.5:22")]);
        assert_eq!(plan.mappings.len(), 1);
        assert_eq!(plan.mappings[0].service, "a");
        assert!(plan.skipped[0].reason.contains("`a`"), "{:?}", plan.skipped);
    }

    #[test]
    fn mapped_hosts_keep_their_address_while_others_come_and_go() {
        let mut a = alloc();
        let first = a.map(&[t("acme", "ssh", "10.0.0.5:22")]).mappings[0].local;
        let more = a.map(&[
            t("acme", "zzz", "10.9.9.9:1"),
            t("acme", "aaa", "10.1.1.1:1"),
            t("acme", "ssh", "10.0.0.5:22"),
        ]);
        let ssh = more.mappings.iter().find(|m| m.service == "ssh").unwrap();
        assert_eq!(ssh.local, first);
        let gone = a.map(&[t("acme", "aaa", "10.1.1.1:1")]);
        assert_eq!(gone.mappings.len(), 1);
    }

    #[test]
    fn a_full_range_is_reported_not_overcommitted() {
        let mut a = Allocator::new("127.77.0.0/30".parse().unwrap(), [1; 32]);
        let targets: Vec<_> = (0..4)
            .map(|i| t("acme", &format!("s{i}"), &format!("10.0.0.{i}:22")))
            .collect();
        let plan = a.map(&targets);
        // .0 is never handed out: 3 of 4 fit.
        assert_eq!(plan.mappings.len(), 3);
        assert_eq!(plan.skipped.len(), 1);
        assert!(plan.skipped[0].reason.contains("full"));
    }

    #[test]
    fn labels_are_dns_safe() {
        assert_eq!(label("DB_1.prod"), "db-1-prod");
        assert_eq!(label("__"), "x");
    }

    fn targets() -> impl Strategy<Value = Vec<ServiceTarget>> {
        prop::collection::vec(
            (
                0u8..3,
                0u8..20,
                0u8..6,
                prop::sample::select(vec![22u16, 80, 443]),
            ),
            0..40,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(c, s, h, p)| {
                    t(
                        &format!("c{c}"),
                        &format!("s{s}"),
                        &format!("10.0.0.{h}:{p}"),
                    )
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::proptests::CASES, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn allocation_is_collision_free_in_range_and_deterministic(ts in targets(), seed in any::<u8>()) {
            let range: Range = "127.77.0.0/24".parse().unwrap();
            let plan = Allocator::new(range, [seed; 32]).map(&ts);
            let mut reversed = ts.clone();
            reversed.reverse();
            // A restart (a fresh allocator, the services listed in another order) maps the same.
            prop_assert_eq!(&Allocator::new(range, [seed; 32]).map(&reversed), &plan);
            let mut locals = BTreeSet::new();
            let mut host_of: BTreeMap<Ipv4Addr, (String, String)> = BTreeMap::new();
            for m in &plan.mappings {
                prop_assert!(range.contains(*m.local.ip()));
                prop_assert!(Range::usable(*m.local.ip()));
                prop_assert!(locals.insert(m.local));
                let host = m.target.rsplit_once(':').unwrap().0.to_string();
                let owner = host_of.entry(*m.local.ip()).or_insert((m.customer.clone(), host.clone()));
                // One address is one host of one customer.
                prop_assert_eq!(owner, &(m.customer.clone(), host));
            }
        }
    }
}
