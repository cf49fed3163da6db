//! Who may connect: the decision Winsock's `WSAAccept` hands to a condition
//! function, made here in its portable form — accept, look at the peer's
//! address, and close at once whoever is not welcome.
//!
//! Three rules, in order: `--deny` ranges (always win), `--allow` ranges
//! (when given, only those sources are served), and `--max-per-source` (at
//! most N connections open at once from one IP). The per-source counts cost
//! O(1) per accept and close — a hash map of the sources with connections
//! open, and each connection's source beside the slab — and their memory is
//! bounded by the connections held: a source's entry goes when its last
//! connection closes.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Why a client was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source is in a `--deny` range, or outside every `--allow` range.
    Denied,
    /// Its source already has `--max-per-source` connections open.
    PerSource,
}

/// The admission rules and the per-source bookkeeping they need.
#[derive(Debug)]
pub(crate) struct Admission {
    /// When not empty, only sources in these ranges are served.
    allow: Vec<IpNet>,
    /// Sources in these ranges are never served.
    deny: Vec<IpNet>,
    /// `--max-per-source`, and the counts it needs; `None` when off.
    per_source: Option<PerSource>,
}

/// Connections open per source IP.
#[derive(Debug)]
struct PerSource {
    /// Most connections one source may hold open.
    limit: u32,
    /// Open connections of each source that has any.
    open: HashMap<IpAddr, u32>,
    /// Each connection's source, by slab key (`None`: a free key).
    source_of: Vec<Option<IpAddr>>,
}

impl Admission {
    /// The rules of a configuration.
    pub(crate) fn new(allow: &[IpNet], deny: &[IpNet], max_per_source: Option<usize>) -> Self {
        Admission {
            allow: allow.to_vec(),
            deny: deny.to_vec(),
            per_source: max_per_source.map(|limit| PerSource {
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
                open: HashMap::new(),
                source_of: Vec::new(),
            }),
        }
    }

    /// Whether a client from `ip` may be served; `Err` says why not.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = canonical(ip);
        if self.deny.iter().any(|net| net.contains(&ip))
            || (!self.allow.is_empty() && !self.allow.iter().any(|net| net.contains(&ip)))
        {
            return Err(Refusal::Denied);
        }
        match &self.per_source {
            Some(p) if p.open.get(&ip).is_some_and(|&n| n >= p.limit) => Err(Refusal::PerSource),
            _ => Ok(()),
        }
    }

    /// Records that connection `key`, from `ip`, was admitted.
    pub(crate) fn opened(&mut self, key: usize, ip: IpAddr) {
        if let Some(p) = &mut self.per_source {
            let ip = canonical(ip);
            *p.open.entry(ip).or_insert(0) += 1;
            if p.source_of.len() <= key {
                p.source_of.resize(key + 1, None);
            }
            p.source_of[key] = Some(ip);
        }
    }

    /// Records that connection `key` closed.
    pub(crate) fn closed(&mut self, key: usize) {
        let Some(p) = &mut self.per_source else {
            return;
        };
        let Some(ip) = p.source_of.get_mut(key).and_then(Option::take) else {
            return;
        };
        if let Some(n) = p.open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                p.open.remove(&ip);
            }
        }
    }
}

/// An IPv4 client of a dual-stack IPv6 listener arrives as `::ffff:a.b.c.d`;
/// the rules and counts are about `a.b.c.d`.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Deny wins over allow; an allow list admits only its ranges; IPv4
    /// mapped into IPv6 is judged as IPv4.
    #[test]
    fn deny_wins_and_allow_restricts() {
        let a = Admission::new(&[net("127.0.0.0/8")], &[net("127.0.0.2/32")], None);
        assert_eq!(a.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(a.check(ip("127.0.0.2")), Err(Refusal::Denied));
        assert_eq!(a.check(ip("10.0.0.1")), Err(Refusal::Denied));
        assert_eq!(a.check(ip("::ffff:127.0.0.2")), Err(Refusal::Denied));
        assert_eq!(a.check(ip("::1")), Err(Refusal::Denied));
    }

    /// The per-source count follows opens and closes, and forgets a source
    /// once its last connection closed.
    #[test]
    fn per_source_counts_follow_opens_and_closes() {
        let mut a = Admission::new(&[], &[], Some(2));
        a.opened(0, ip("127.0.0.1"));
        a.opened(1, ip("127.0.0.1"));
        assert_eq!(a.check(ip("127.0.0.1")), Err(Refusal::PerSource));
        assert_eq!(a.check(ip("127.0.0.9")), Ok(()));
        a.closed(0);
        assert_eq!(a.check(ip("127.0.0.1")), Ok(()));
        a.closed(1);
        a.closed(1); // a second close of the same key changes nothing
        let p = a.per_source.as_ref().unwrap();
        assert!(p.open.is_empty());
    }
}
