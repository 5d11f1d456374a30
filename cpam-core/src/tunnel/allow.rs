//! The gatekeeper's allow-list: which addresses and ports it may dial.
//!
//! Written `CIDR:PORTS`, e.g. `127.0.0.0/8:22,2222`, `10.1.0.0/16:*`,
//! `192.0.2.7:3389-3390`, `[::1]/128:22`. Pure and tested without sockets.
//!
//! Loopback, link-local and unspecified addresses (the gatekeeper's own
//! services, cloud metadata endpoints) are reached only through a rule that
//! names them: `127.0.0.0/8:22` reaches `127.0.0.1:22`, `0.0.0.0/0:22` does
//! not.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{Error, Result};

/// One `CIDR:PORTS` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    net: IpAddr,
    prefix: u8,
    ports: Vec<(u16, u16)>,
    text: String,
}

impl Rule {
    fn contains(&self, ip: IpAddr, port: u16) -> bool {
        let in_net = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        };
        // A special address only through a rule inside its own range.
        let named = special_prefix(ip).is_none_or(|p| self.prefix >= p);
        in_net
            && named
            && self
                .ports
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&port))
    }
}

/// For a loopback, link-local or unspecified address, the prefix length of
/// its range: a rule covers it only when at least that narrow.
fn special_prefix(ip: IpAddr) -> Option<u8> {
    match ip {
        IpAddr::V4(a) if a.is_loopback() => Some(8),
        IpAddr::V4(a) if a.is_link_local() => Some(16),
        IpAddr::V4(a) if a.is_unspecified() => Some(32),
        IpAddr::V6(a) if a.is_loopback() || a.is_unspecified() => Some(128),
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => Some(10),
        _ => None,
    }
}

impl FromStr for Rule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "allow rule `{s}`: {why} (expected CIDR:PORTS, e.g. 127.0.0.0/8:22,2222)"
            ))
        };
        let (net, ports) = if let Some(rest) = s.strip_prefix('[') {
            let (n, p) = rest.split_once("]").ok_or_else(|| bad("unclosed `[`"))?;
            let (prefix_part, p) = match p.split_once(':') {
                Some((pre, p)) => (pre, p),
                None => return Err(bad("missing ports")),
            };
            (format!("{n}{prefix_part}"), p)
        } else {
            let (n, p) = s.rsplit_once(':').ok_or_else(|| bad("missing ports"))?;
            (n.to_string(), p)
        };
        let (addr, prefix) = match net.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (net.as_str(), None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix {
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad("bad prefix length"))?,
            None => max,
        };
        let mut ranges = Vec::new();
        for part in ports.split(',') {
            let part = part.trim();
            if part == "*" {
                ranges.push((1, u16::MAX));
                continue;
            }
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let lo: u16 = lo
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("bad port"))?;
            let hi: u16 = hi
                .parse()
                .ok()
                .filter(|p| *p >= lo)
                .ok_or_else(|| bad("bad port range"))?;
            ranges.push((lo, hi));
        }
        Ok(Rule {
            net: ip,
            prefix,
            ports: ranges,
            text: s.to_string(),
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A set of rules; empty allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<Rule>,
}

impl AllowList {
    /// Parses each `CIDR:PORTS` rule.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Self> {
        Ok(AllowList {
            rules: rules
                .iter()
                .map(|r| r.as_ref().parse())
                .collect::<Result<_>>()?,
        })
    }

    /// Whether `ip:port` may be dialed.
    pub fn allows(&self, ip: IpAddr, port: u16) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.rules.iter().any(|r| r.contains(ip, port))
    }

    /// Whether the list allows nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules as written.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rules: &[&str], target: &str, expect: bool) {
        let list = AllowList::parse(rules).expect("rules parse");
        let sa: std::net::SocketAddr = target.parse().expect("target parses");
        assert_eq!(
            list.allows(sa.ip(), sa.port()),
            expect,
            "{rules:?} vs {target}"
        );
    }

    #[test]
    fn matching() {
        check(&["127.0.0.0/8:22,2222"], "127.1.2.3:22", true);
        check(&["127.0.0.0/8:22,2222"], "127.1.2.3:2222", true);
        check(&["127.0.0.0/8:22,2222"], "127.1.2.3:23", false);
        check(&["127.0.0.0/8:22,2222"], "128.0.0.1:22", false);
        check(&["10.1.0.0/16:*"], "10.1.255.1:65535", true);
        check(&["10.1.0.0/16:*"], "10.2.0.1:80", false);
        check(&["192.0.2.7:3389-3390"], "192.0.2.7:3390", true);
        check(&["192.0.2.7:3389-3390"], "192.0.2.8:3389", false);
        check(&["0.0.0.0/0:443"], "203.0.113.9:443", true);
        check(&["[::1]/128:22"], "[::1]:22", true);
        check(&["127.0.0.1:22"], "[::ffff:127.0.0.1]:22", true);
        check(&[], "127.0.0.1:22", false);
    }

    #[test]
    fn broad_rules_do_not_cover_loopback_link_local_or_unspecified() {
        for broad in ["0.0.0.0/0:*", "0.0.0.0/1:*", "[::]/0:*"] {
            for special in [
                "127.0.0.1:22",
                "169.254.169.254:80",
                "0.0.0.0:22",
                "[::1]:22",
                "[fe80::1]:22",
                "[::]:22",
                "[::ffff:127.0.0.1]:22",
            ] {
                check(&[broad], special, false);
            }
        }
        check(&["0.0.0.0/0:*"], "203.0.113.9:22", true);
        check(&["[::]/0:*"], "[2001:db8::1]:22", true);
        // Named explicitly, they are reachable.
        check(&["127.0.0.0/8:22"], "127.0.0.1:22", true);
        check(&["127.0.0.1:22"], "127.0.0.1:22", true);
        check(&["169.254.0.0/16:80"], "169.254.169.254:80", true);
        check(&["169.254.169.254:80"], "169.254.169.254:80", true);
        check(&["0.0.0.0/32:22"], "0.0.0.0:22", true);
        check(&["[::1]/128:22"], "[::1]:22", true);
        check(&["[fe80::]/10:22"], "[fe80::1]:22", true);
        check(&["[fe80::]/64:22"], "[fe80::1]:22", true);
        // Wider than the range it holds is not naming it.
        check(&["126.0.0.0/7:22"], "127.0.0.1:22", false);
        check(&["169.0.0.0/8:80"], "169.254.169.254:80", false);
    }

    #[test]
    fn bad_rules_are_named() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1/33:22",
            "nothost:22",
            "127.0.0.1:0",
            "127.0.0.1:30-20",
            "[::1:22",
        ] {
            let e = AllowList::parse(&[bad]).expect_err(bad);
            assert!(e.message().contains(bad), "{e}");
        }
    }
}
